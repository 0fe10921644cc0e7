-- Airflow 2.x (2.8–2.11) on MySQL/MariaDB, per spec §1.1/§1.2: StringID columns are
-- utf8mb3_bin (case-sensitive), val is MEDIUMTEXT, booleans are TINYINT(1), all nullable.
CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, PRIMARY KEY (version_num)) DEFAULT CHARSET=utf8mb4;
INSERT INTO alembic_version VALUES ('5f2621c13b39');
CREATE TABLE variable (
    id INTEGER NOT NULL AUTO_INCREMENT,
    val MEDIUMTEXT,
    `key` VARCHAR(250) CHARACTER SET utf8mb3 COLLATE utf8mb3_bin,
    is_encrypted TINYINT(1),
    description TEXT,
    PRIMARY KEY (id),
    CONSTRAINT variable_key_uq UNIQUE (`key`)
) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
CREATE TABLE connection (
    id INTEGER NOT NULL AUTO_INCREMENT,
    conn_id VARCHAR(250) CHARACTER SET utf8mb3 COLLATE utf8mb3_bin NOT NULL,
    conn_type VARCHAR(500) NOT NULL,
    description TEXT,
    host VARCHAR(500),
    `schema` VARCHAR(500),
    login TEXT,
    password TEXT,
    port INTEGER,
    is_encrypted TINYINT(1),
    is_extra_encrypted TINYINT(1),
    extra TEXT,
    PRIMARY KEY (id),
    CONSTRAINT connection_conn_id_uq UNIQUE (conn_id)
) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
