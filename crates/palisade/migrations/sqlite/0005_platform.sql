-- Platform operations (SQLite): a suspended tenant's sessions stop working at once.
ALTER TABLE tenants ADD COLUMN suspended_at TEXT;
