"""Named schema migrations, applied in order, each once and in its own transaction (sqlite-utils style).

Add a migration by appending (name, sql) to MIGRATIONS; never edit or rename one that has shipped.
A database records the names it has applied in its `migrations` table, so reopening a file applies only the
missing ones, and a file migrated by a newer prefloop (names this code does not know) is refused.
"""

from __future__ import annotations

from datetime import datetime

import duckdb

from storage.errors import StoreError

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
    (
        "002_ratings",
        """
        CREATE SEQUENCE rating_ids START 1;
        CREATE TABLE ratings (
            id BIGINT PRIMARY KEY DEFAULT nextval('rating_ids'),
            prompt_id BIGINT NOT NULL REFERENCES prompts (id),
            generation_id BIGINT NOT NULL REFERENCES generations (id),
            rating VARCHAR NOT NULL CHECK (rating IN ('up', 'down')),
            labeler VARCHAR NOT NULL,
            policy_version VARCHAR NOT NULL,
            created_at TIMESTAMP NOT NULL
        );
        CREATE TABLE round_ratings (
            round_id BIGINT NOT NULL REFERENCES rounds (id),
            rating_id BIGINT NOT NULL REFERENCES ratings (id),
            PRIMARY KEY (round_id, rating_id)
        )
        """,
    ),
    (
        # One judgement per pair and one rating per completion, kept by primary keys: two votes on one pair
        # racing each other (a double click) cannot both commit. A file from before this keeps every row it has;
        # of a pair judged more than once only the first judgement counts from now on (the others stay, for
        # the record, but never train or export), and likewise for a completion rated more than once.
        "003_one_label_each",
        """
        CREATE TABLE judged_pairs (
            low_generation_id BIGINT NOT NULL,
            high_generation_id BIGINT NOT NULL,
            judgement_id BIGINT NOT NULL UNIQUE REFERENCES judgements (id),
            PRIMARY KEY (low_generation_id, high_generation_id)
        );
        INSERT INTO judged_pairs
            SELECT least(left_generation_id, right_generation_id), greatest(left_generation_id, right_generation_id),
                   min(id)
            FROM judgements GROUP BY 1, 2;
        CREATE TABLE rated_generations (
            generation_id BIGINT PRIMARY KEY REFERENCES generations (id),
            rating_id BIGINT NOT NULL UNIQUE REFERENCES ratings (id)
        );
        INSERT INTO rated_generations SELECT generation_id, min(id) FROM ratings GROUP BY generation_id
        """,
    ),
    (
        # Undo, edit-to-chosen, truncation marks and labeling guidelines. A withdrawn judgement keeps its row (the
        # audit) and gets one in `withdrawals`; it leaves judged_pairs, so it never counts, trains or exports,
        # and the pair can be judged again. A generation written by a person has author 'human'. cut_at: the
        # completion was stopped by the token limit after that many new tokens (NULL: it ended by itself, or
        # was sampled before this was recorded). Guidelines keep every version; the newest is shown.
        "004_undo_edit_guidelines",
        """
        ALTER TABLE generations ADD COLUMN author VARCHAR DEFAULT 'model';
        ALTER TABLE generations ADD COLUMN cut_at INTEGER;
        CREATE TABLE withdrawals (
            judgement_id BIGINT PRIMARY KEY REFERENCES judgements (id),
            labeler VARCHAR NOT NULL,
            withdrawn_at TIMESTAMP NOT NULL
        );
        CREATE SEQUENCE guideline_ids START 1;
        CREATE TABLE guidelines (
            id BIGINT PRIMARY KEY DEFAULT nextval('guideline_ids'),
            text VARCHAR NOT NULL,
            author VARCHAR NOT NULL,
            created_at TIMESTAMP NOT NULL
        )
        """,
    ),
    (
        # The blind arena. A prompt marked eval_only is never sampled for labeling and never trains a round; the
        # arena draws from those first (storage/arena.py says how). A battle is two versions' completions of one
        # prompt (generations rows, like a pair's), handed to one labeler, with the version shown on the left.
        # winner is relative to version_a / version_b ("a", "b", "tie", "both_bad"), NULL until the one vote.
        "005_arena",
        """
        ALTER TABLE prompts ADD COLUMN eval_only BOOLEAN DEFAULT FALSE;
        CREATE SEQUENCE battle_ids START 1;
        CREATE TABLE battles (
            id BIGINT PRIMARY KEY DEFAULT nextval('battle_ids'),
            prompt_id BIGINT NOT NULL REFERENCES prompts (id),
            version_a VARCHAR NOT NULL,
            version_b VARCHAR NOT NULL,
            generation_a BIGINT NOT NULL REFERENCES generations (id),
            generation_b BIGINT NOT NULL REFERENCES generations (id),
            left_version VARCHAR NOT NULL,
            labeler VARCHAR NOT NULL,
            winner VARCHAR CHECK (winner IN ('a', 'b', 'tie', 'both_bad')),
            voted_at TIMESTAMP,
            created_at TIMESTAMP NOT NULL,
            CHECK (version_a <> version_b),
            CHECK (left_version IN (version_a, version_b)),
            CHECK ((winner IS NULL) = (voted_at IS NULL))
        )
        """,
    ),
    (
        # Arena votes as training pairs, opt-in per round (DPOConfig.arena_pairs): the decisive battles a round
        # trained on, recorded when it finishes, like round_judgements. Such a battle's prompt leaves the arena's
        # held-out pool.
        "006_round_battles",
        """
        CREATE TABLE round_battles (
            round_id BIGINT NOT NULL REFERENCES rounds (id),
            battle_id BIGINT NOT NULL REFERENCES battles (id),
            PRIMARY KEY (round_id, battle_id)
        )
        """,
    ),
    (
        # Second looks, for agreement between labelers: a judged pair shown again to another labeler, sides
        # re-randomized. Their vote is a second_votes row (sides as shown), never a judgement, so the pair keeps
        # its one training judgement. second_voted holds the ones that count, one per labeler and judgement;
        # undoing one removes it from there and keeps its row. The share of pairs served as second looks is the
        # setting 'second_look_share' (absent: 0, none).
        "007_second_votes",
        """
        CREATE SEQUENCE second_vote_ids START 1;
        CREATE TABLE second_votes (
            id BIGINT PRIMARY KEY DEFAULT nextval('second_vote_ids'),
            judgement_id BIGINT NOT NULL REFERENCES judgements (id),
            left_generation_id BIGINT NOT NULL REFERENCES generations (id),
            right_generation_id BIGINT NOT NULL REFERENCES generations (id),
            choice VARCHAR NOT NULL CHECK (choice IN ('left', 'right', 'tie', 'both_bad', 'skip')),
            labeler VARCHAR NOT NULL,
            created_at TIMESTAMP NOT NULL
        );
        CREATE TABLE second_voted (
            judgement_id BIGINT NOT NULL REFERENCES judgements (id),
            labeler VARCHAR NOT NULL,
            second_vote_id BIGINT NOT NULL UNIQUE REFERENCES second_votes (id),
            PRIMARY KEY (judgement_id, labeler)
        )
        """,
    ),
    (
        # How each judged pair was chosen from its prompt's candidates (labeling/selection.py): "random", a
        # strategy's name such as "spread", "control" (drawn at random while a strategy was on, to compare it
        # against), or "edit" (an edit to chosen: the labeler made the pair). Free text, so a new strategy needs
        # no migration. Every pair before this was two random samples of one prompt, and edits are told apart
        # by their human-written left side.
        "008_pair_selection",
        """
        ALTER TABLE judgements ADD COLUMN selection VARCHAR DEFAULT 'random';
        UPDATE judgements SET selection = 'edit'
            WHERE left_generation_id IN (SELECT id FROM generations WHERE author = 'human')
        """,
    ),
]


def applied_migrations(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Names of the migrations recorded in the database, in the order they were applied."""
    rows = con.execute("SELECT name FROM migrations ORDER BY applied_at, name").fetchall()
    return [name for (name,) in rows]


def apply_migrations(con: duckdb.DuckDBPyConnection, where: str = "the database") -> list[str]:
    """Apply the migrations this database lacks, each in its own transaction; returns their names.

    `where` names the database in error messages (its path). Raises StoreError if the file holds migrations
    this code does not know, or if one fails (that one is rolled back; earlier ones stay applied).
    """
    con.execute("CREATE TABLE IF NOT EXISTS migrations (name VARCHAR PRIMARY KEY, applied_at TIMESTAMP NOT NULL)")
    done = set(applied_migrations(con))
    unknown = sorted(done - {name for name, _ in MIGRATIONS})
    if unknown:
        raise StoreError(
            f"{where} was upgraded by a newer prefloop (unknown migrations: {', '.join(unknown)}). "
            "Update prefloop, or pass --db with another file."
        )
    applied = []
    for name, sql in MIGRATIONS:
        if name in done:
            continue
        con.begin()
        try:
            con.execute(sql)
            con.execute("INSERT INTO migrations VALUES (?, ?)", [name, datetime.now()])
            con.commit()
        except duckdb.Error as err:
            rollback_quietly(con)
            raise StoreError(
                f"Could not upgrade {where}: migration {name} failed ({err}) and was rolled back. "
                "Update prefloop, or pass --db with another file."
            ) from err
        applied.append(name)
    return applied


def rollback_quietly(con: duckdb.DuckDBPyConnection) -> None:
    """Roll back the open transaction, if any (a failed commit has already ended it)."""
    try:
        con.rollback()
    except duckdb.Error:
        pass
