"""Web apps: the local preview server, and the public app (unsubscribe, webhooks, events, health, metrics)."""
