-- Airflow 3.2+ (3.3) `variable` and `connection` on PostgreSQL, per spec §1.1/§1.2:
-- NOT NULL key/val/flags (revision 888b59e02a5b), team_name → team.name.
CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num));
INSERT INTO alembic_version VALUES ('d2f4e1b3c5a7');
CREATE TABLE team (name VARCHAR(50) NOT NULL, CONSTRAINT team_pkey PRIMARY KEY (name));
CREATE TABLE variable (
    id SERIAL NOT NULL,
    team_name VARCHAR(50),
    is_encrypted BOOLEAN NOT NULL,
    "key" VARCHAR(250) NOT NULL,
    val TEXT NOT NULL,
    description TEXT,
    CONSTRAINT variable_pkey PRIMARY KEY (id),
    CONSTRAINT variable_key_uq UNIQUE ("key"),
    CONSTRAINT variable_team_name_fkey FOREIGN KEY (team_name) REFERENCES team (name) ON DELETE SET NULL
);
CREATE TABLE connection (
    id SERIAL NOT NULL,
    conn_id VARCHAR(250) NOT NULL,
    conn_type VARCHAR(500) NOT NULL,
    description TEXT,
    host VARCHAR(500),
    "schema" VARCHAR(500),
    login TEXT,
    port INTEGER,
    team_name VARCHAR(50),
    password TEXT,
    extra TEXT,
    is_encrypted BOOLEAN NOT NULL,
    is_extra_encrypted BOOLEAN NOT NULL,
    CONSTRAINT connection_pkey PRIMARY KEY (id),
    CONSTRAINT connection_conn_id_uq UNIQUE (conn_id),
    CONSTRAINT connection_team_name_fkey FOREIGN KEY (team_name) REFERENCES team (name) ON DELETE SET NULL
);
