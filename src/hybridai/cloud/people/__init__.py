"""People and their traces: users, passwords and MFA, API secrets, the audit log."""
