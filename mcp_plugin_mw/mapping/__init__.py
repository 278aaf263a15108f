"""Framework-free translation between HTTP messages and hook payloads."""
