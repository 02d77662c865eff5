"""Named schema migrations, applied in order, each once and in its own transaction.

Add a migration by appending (name, sql) to MIGRATIONS; never edit one that has shipped.
"""

MIGRATIONS: list[tuple[str, str]] = [
    (
        "001_initial",
        """
        CREATE SEQUENCE prompt_ids START 1;
        CREATE TABLE prompts (
            id BIGINT PRIMARY KEY DEFAULT nextval('prompt_ids'),
            text VARCHAR NOT NULL UNIQUE,
            source VARCHAR NOT NULL,
            created_at TIMESTAMP NOT NULL
        );
        CREATE SEQUENCE generation_ids START 1;
        CREATE TABLE generations (
            id BIGINT PRIMARY KEY DEFAULT nextval('generation_ids'),
            prompt_id BIGINT NOT NULL REFERENCES prompts (id),
            version VARCHAR NOT NULL,
            text VARCHAR NOT NULL,
            settings VARCHAR NOT NULL,
            created_at TIMESTAMP NOT NULL
        );
        CREATE SEQUENCE judgement_ids START 1;
        CREATE TABLE judgements (
            id BIGINT PRIMARY KEY DEFAULT nextval('judgement_ids'),
            prompt_id BIGINT NOT NULL REFERENCES prompts (id),
            left_generation_id BIGINT NOT NULL REFERENCES generations (id),
            right_generation_id BIGINT NOT NULL REFERENCES generations (id),
            choice VARCHAR NOT NULL CHECK (choice IN ('left', 'right', 'tie', 'both_bad', 'skip')),
            labeler VARCHAR NOT NULL,
            policy_version VARCHAR NOT NULL,
            created_at TIMESTAMP NOT NULL
        );
        CREATE SEQUENCE round_ids START 1;
        CREATE TABLE rounds (
            id BIGINT PRIMARY KEY DEFAULT nextval('round_ids'),
            status VARCHAR NOT NULL CHECK (status IN ('running', 'done', 'failed', 'cancelled')),
            config VARCHAR NOT NULL,
            metrics VARCHAR NOT NULL,
            adapter_path VARCHAR,
            parent_round BIGINT REFERENCES rounds (id),
            base_model VARCHAR NOT NULL,
            n_pairs BIGINT NOT NULL,
            started_at TIMESTAMP NOT NULL,
            finished_at TIMESTAMP,
            error VARCHAR
        );
        CREATE TABLE round_judgements (
            round_id BIGINT NOT NULL REFERENCES rounds (id),
            judgement_id BIGINT NOT NULL REFERENCES judgements (id),
            PRIMARY KEY (round_id, judgement_id)
        );
        CREATE TABLE settings (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)
        """,
    ),
]
