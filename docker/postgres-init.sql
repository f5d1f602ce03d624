-- Runs once, when the container initialises an empty data directory: the pgvector
-- extension is ready in the test database even for a role that may not create it.
CREATE EXTENSION IF NOT EXISTS vector;
