"""HTTP layers shared by the API and the UI: health, problem details."""
