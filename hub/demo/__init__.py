"""`gridwatch demo`: the real hub with a simulated district around it."""
