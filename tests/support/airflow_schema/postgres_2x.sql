-- Airflow 2.x (2.8–2.11) `variable` and `connection` on PostgreSQL, per spec §1.1/§1.2:
-- nullable key/val/flags, no team column. Column order deliberately differs from SQLite's.
CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num));
INSERT INTO alembic_version VALUES ('5f2621c13b39');
CREATE TABLE variable (
    id SERIAL NOT NULL,
    val TEXT,
    "key" VARCHAR(250),
    is_encrypted BOOLEAN,
    description TEXT,
    CONSTRAINT variable_pkey PRIMARY KEY (id),
    CONSTRAINT variable_key_uq UNIQUE ("key")
);
CREATE TABLE connection (
    id SERIAL NOT NULL,
    conn_id VARCHAR(250) NOT NULL,
    conn_type VARCHAR(500) NOT NULL,
    description TEXT,
    host VARCHAR(500),
    "schema" VARCHAR(500),
    login TEXT,
    password TEXT,
    port INTEGER,
    is_encrypted BOOLEAN,
    is_extra_encrypted BOOLEAN,
    extra TEXT,
    CONSTRAINT connection_pkey PRIMARY KEY (id),
    CONSTRAINT connection_conn_id_uq UNIQUE (conn_id)
);
