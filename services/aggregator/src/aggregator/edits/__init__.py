"""Did an edit help? (issue 15): a page's edits, found from the last-modified date its
snippet carries or from the city's page list (records.py), the answers before and after
each one judged per question (verdict.py), and the four-week report to the division
(reports.py)."""
