"""koe feedback: the page survey's API (JSON and plain HTML form), its outbox and the relay."""
