-- What a tenant admin stores with a customer's key (SQLite; claim APP-5): owner-set
-- metadata, JSON text, and the rate limit key verification applies when the app names
-- none (requests per window).
ALTER TABLE api_keys ADD COLUMN meta TEXT;
ALTER TABLE api_keys ADD COLUMN ratelimit_limit INTEGER;
ALTER TABLE api_keys ADD COLUMN ratelimit_window_seconds INTEGER;
