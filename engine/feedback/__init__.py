"""The feedback loop: what comes back from recipients, providers and the shop.

Unsubscribes, provider webhooks (bounces, spam reports, opens, clicks), shop events,
consent with evidence, suppressions, data-subject requests (export / forget) and the
per-campaign statistics built from all of them. Sits at the runtime level: it may use
the store, settings, clock, tokens and errors, and nothing above them.
"""
