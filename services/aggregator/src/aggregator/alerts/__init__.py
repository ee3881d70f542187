"""Alerts: the drop detector judged on completed days, the crowd rule, the alert
outbox, and the alerts admins hold, release and mark handled."""
