//! Weekly summaries for the headteacher and same-day safeguarding alerts.
