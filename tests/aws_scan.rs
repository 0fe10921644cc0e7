//! A Secrets Manager scan fetches the values of what it listed while the listing goes on (issue
//! 18: reads during plans follow latency). `ListSecrets` pages come one after the other (each
//! needs the previous page's token); a scan that fetched only after the last page would pay every
//! listing round trip and then every fetch's. A fake endpoint holds back its second page until a
//! `BatchGetSecretValue` has arrived: only a pipelined scan gets it at once.
#![cfg(feature = "aws_secrets_manager")]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use airflow_secrets_sync::model::{ItemId, Kind};
use airflow_secrets_sync::store::Store;
use airflow_secrets_sync::store::aws::secrets_manager::{AwsSecretsManagerConfig, AwsSecretsManagerStore};
use serde_json::{Value as Json, json};

/// How long the second page waits for a fetch before answering anyway (then the test fails).
const GATE: Duration = Duration::from_secs(10);
const FIRST_PAGE: usize = 20; // one full BatchGetSecretValue batch
const ITEMS: usize = 25;

#[derive(Default)]
struct Fake {
    fetched: Mutex<bool>,
    fetch_seen: Condvar,
    /// The second page had to give up waiting: no fetch was sent while the listing went on.
    gate_timed_out: Mutex<bool>,
    actions: Mutex<Vec<String>>,
}

fn name(i: usize) -> String {
    format!("airflow/variables/v{i:02}")
}

impl Fake {
    fn list(&self, req: &Json) -> Json {
        let prefix = req.pointer("/Filters/0/Values/0").and_then(Json::as_str).unwrap_or("");
        if prefix != "airflow/variables/" {
            return json!({ "SecretList": [] });
        }
        let entry = |i: usize| json!({ "ARN": format!("arn:aws:secretsmanager:us-east-1:123456789012:secret:{}-AbCdEf", name(i)), "Name": name(i) });
        if req.get("NextToken").is_none() {
            return json!({ "SecretList": (0..FIRST_PAGE).map(entry).collect::<Vec<_>>(), "NextToken": "page-2" });
        }
        let fetched = self.fetched.lock().unwrap();
        let (_fetched, wait) = self.fetch_seen.wait_timeout_while(fetched, GATE, |f| !*f).unwrap();
        if wait.timed_out() {
            *self.gate_timed_out.lock().unwrap() = true;
        }
        json!({ "SecretList": (FIRST_PAGE..ITEMS).map(entry).collect::<Vec<_>>() })
    }

    fn batch_get(&self, req: &Json) -> Json {
        *self.fetched.lock().unwrap() = true;
        self.fetch_seen.notify_all();
        let values: Vec<Json> = req["SecretIdList"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                let n = n.as_str().unwrap();
                json!({ "ARN": format!("arn:aws:secretsmanager:us-east-1:123456789012:secret:{n}-AbCdEf"), "Name": n,
                        "SecretString": format!("value of {n}"), "VersionId": "v1", "VersionStages": ["AWSCURRENT"] })
            })
            .collect();
        json!({ "SecretValues": values, "Errors": [] })
    }
}

/// HTTP/1.1 with keep-alive, one thread per connection: enough for the SDK's JSON protocol.
fn handle(stream: TcpStream, fake: &Fake) {
    let mut out = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    loop {
        let mut headers = HashMap::new();
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            line.clear();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        let mut body = vec![0; len];
        r.read_exact(&mut body).unwrap();
        let req: Json = serde_json::from_slice(&body).unwrap_or(Json::Null);
        let action = headers.get("x-amz-target").and_then(|t| t.rsplit('.').next()).unwrap_or("").to_string();
        fake.actions.lock().unwrap().push(action.clone());
        let answer = match action.as_str() {
            "ListSecrets" => fake.list(&req),
            "BatchGetSecretValue" => fake.batch_get(&req),
            other => panic!("unexpected action {other:?}"),
        };
        let answer = answer.to_string();
        let head = format!("HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\n\r\n", answer.len());
        if out.write_all(head.as_bytes()).and_then(|()| out.write_all(answer.as_bytes())).is_err() {
            return;
        }
    }
}

fn serve(fake: Arc<Fake>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let fake = fake.clone();
            std::thread::spawn(move || handle(conn, &fake));
        }
    });
    port
}

#[tokio::test]
async fn secrets_manager_scan_fetches_while_it_lists() {
    let fake = Arc::new(Fake::default());
    let port = serve(fake.clone());
    let cfg: AwsSecretsManagerConfig = serde_json::from_value(json!({
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
        "endpoint_url": format!("http://127.0.0.1:{port}"),
    }))
    .unwrap();
    let store = AwsSecretsManagerStore::new(cfg).await.unwrap();

    let inv = store.scan(Kind::Variable).await.unwrap();

    assert!(!*fake.gate_timed_out.lock().unwrap(), "no BatchGetSecretValue before the last ListSecrets page: {:?}", fake.actions.lock().unwrap());
    assert_eq!(inv.len(), ITEMS, "every listed secret, with its value");
    for i in 0..ITEMS {
        let id = ItemId::variable(format!("v{i:02}"));
        let got = inv.get(&id).and_then(|e| e.as_variable()).map(|v| v.value.expose_plaintext().to_string());
        assert_eq!(got, Some(format!("value of {}", name(i))), "{id}");
    }
    // Calls unchanged: two pages, then ceil(25 / 20) = 2 batches.
    let actions = fake.actions.lock().unwrap().clone();
    assert_eq!(actions.iter().filter(|a| *a == "ListSecrets").count(), 2, "{actions:?}");
    assert_eq!(actions.iter().filter(|a| *a == "BatchGetSecretValue").count(), 2, "{actions:?}");
}
