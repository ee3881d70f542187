"""The read side: window and daily figures, history across folded months, scores,
trends and funnel limits, as the API, the dashboard and the CSV show them."""
