-- Media albums, comments and publishing containers (issue 4). Keep in step with
-- migrations/postgres/0006.

-- Album children point at their album and keep their order; lists show top-level media only.
ALTER TABLE media ADD COLUMN parent_id TEXT REFERENCES media (id) ON DELETE CASCADE;
ALTER TABLE media ADD COLUMN position INTEGER NOT NULL DEFAULT 0;
DROP INDEX media_by_user;
-- Keyset paging: (created_at, id) descending within a user's top-level media.
CREATE INDEX media_page ON media (user_id, created_at, id) WHERE parent_id IS NULL;
CREATE INDEX media_children ON media (parent_id, position) WHERE parent_id IS NOT NULL;

-- comments_count on media counts the rows here (comments and replies); it is kept in the same
-- transaction as every insert and delete.
CREATE TABLE comments (
    id         TEXT PRIMARY KEY,
    media_id   TEXT NOT NULL REFERENCES media (id) ON DELETE CASCADE,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    parent_id  TEXT REFERENCES comments (id) ON DELETE CASCADE,
    text       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    like_count INTEGER NOT NULL DEFAULT 0,
    hidden     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX comments_page ON comments (media_id, created_at, id) WHERE parent_id IS NULL;
CREATE INDEX comments_replies ON comments (parent_id, created_at, id) WHERE parent_id IS NOT NULL;

-- Publishing containers: made by POST /{ig-user-id}/media, published by /media_publish.
CREATE TABLE containers (
    id               TEXT PRIMARY KEY,
    app_id           TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    user_id          INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind             TEXT NOT NULL CHECK (kind IN ('IMAGE', 'VIDEO', 'REELS', 'STORIES', 'CAROUSEL')),
    source_url       TEXT,
    source_is_video  INTEGER NOT NULL DEFAULT 0,
    caption          TEXT NOT NULL DEFAULT '',
    is_carousel_item INTEGER NOT NULL DEFAULT 0 CHECK (is_carousel_item IN (0, 1)),
    children         TEXT NOT NULL DEFAULT '',   -- comma-separated container ids, in order
    status           TEXT NOT NULL CHECK (status IN ('IN_PROGRESS', 'FINISHED', 'ERROR', 'PUBLISHED')),
    status_reason    TEXT,
    created_at       INTEGER NOT NULL,
    published_at     INTEGER,
    media_id         TEXT
);
-- The 24-hour publishing cap counts a user's published top-level containers.
CREATE INDEX containers_published ON containers (user_id, published_at) WHERE published_at IS NOT NULL;
CREATE INDEX containers_by_age ON containers (created_at);
