-- App roles (claim APP-1): a member may hold one of the deployment-wide roles the app's
-- manifest declares, by name. Its rank stays in `role` (the no-escalation rules compare
-- it); a member holds at most one of an app role and a custom role.
ALTER TABLE memberships ADD COLUMN app_role TEXT;
