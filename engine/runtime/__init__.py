"""The runtime: planning, flows, the policy gate, claiming and dispatching outbox rows."""
