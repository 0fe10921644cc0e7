-- Airflow 3.2+ (3.3) on MySQL/MariaDB, per spec §1.1/§1.2: NOT NULL key/val/flags,
-- team_name → team.name, utf8mb3_bin StringID columns, MEDIUMTEXT val, TINYINT(1) booleans.
CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, PRIMARY KEY (version_num)) DEFAULT CHARSET=utf8mb4;
INSERT INTO alembic_version VALUES ('d2f4e1b3c5a7');
CREATE TABLE team (name VARCHAR(50) NOT NULL, PRIMARY KEY (name)) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
CREATE TABLE variable (
    id INTEGER NOT NULL AUTO_INCREMENT,
    team_name VARCHAR(50),
    is_encrypted TINYINT(1) NOT NULL,
    `key` VARCHAR(250) CHARACTER SET utf8mb3 COLLATE utf8mb3_bin NOT NULL,
    val MEDIUMTEXT NOT NULL,
    description TEXT,
    PRIMARY KEY (id),
    CONSTRAINT variable_key_uq UNIQUE (`key`),
    CONSTRAINT variable_team_name_fkey FOREIGN KEY (team_name) REFERENCES team (name) ON DELETE SET NULL
) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
CREATE TABLE connection (
    id INTEGER NOT NULL AUTO_INCREMENT,
    conn_id VARCHAR(250) CHARACTER SET utf8mb3 COLLATE utf8mb3_bin NOT NULL,
    conn_type VARCHAR(500) NOT NULL,
    description TEXT,
    host VARCHAR(500),
    `schema` VARCHAR(500),
    login TEXT,
    port INTEGER,
    team_name VARCHAR(50),
    password TEXT,
    extra TEXT,
    is_encrypted TINYINT(1) NOT NULL,
    is_extra_encrypted TINYINT(1) NOT NULL,
    PRIMARY KEY (id),
    CONSTRAINT connection_conn_id_uq UNIQUE (conn_id),
    CONSTRAINT connection_team_name_fkey FOREIGN KEY (team_name) REFERENCES team (name) ON DELETE SET NULL
) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
