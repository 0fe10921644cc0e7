//! The Fernet token decoder (lenient base64, structure checks, MultiFernet): no panics.
#![no_main]
use airflow_secrets_sync::airflow::fernet::AirflowFernet;
use airflow_secrets_sync::model::SecretValue;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let keys = SecretValue::from(
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=,4OHi4-Tl5ufo6err7O3u7_Dx8vP09fb3-Pn6-_z9_v8=",
    );
    let f = AirflowFernet::from_key_string(&keys).expect("valid keys");
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = f.decrypt(s);
        let _ = f.rotate(s);
    }
    let _ = AirflowFernet::from_key_string(&SecretValue::from(String::from_utf8_lossy(data).into_owned()));
});
