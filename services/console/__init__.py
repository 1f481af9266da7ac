"""The web console for people: server-rendered pages over the four services' HTTP APIs."""
