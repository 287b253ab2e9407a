"""The database: models, engine and migrations. Only this package writes SQL."""
