"""Messaging on kombu: topology, transactional outbox and relay, consumers with an inbox, DLQ tools."""
