"""koe's notifier: reads koe.alerts.v1 and emails the owning division once per alert."""
