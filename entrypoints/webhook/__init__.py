"""The Pub/Sub push webhook: Pub/Sub POSTs each message of a push subscription here."""
