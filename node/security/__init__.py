"""Access control and transport security: config sections, TLS contexts, the audit trail."""
