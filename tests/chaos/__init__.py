"""The fault suite (issue #7): thousands of commands through the production-mode processes while
brokers, databases, workers, web processes and providers fail; then every effect counted."""
