"""Training a model: the training core (`core`), logged runs (`runs`), background jobs (`jobs`), MLflow (`tracking`)."""
