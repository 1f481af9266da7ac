"""The four Opora services; each reads the same way (app, api, schemas, models, domain, handlers, events)."""
