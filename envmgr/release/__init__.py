"""Moving pointers after publication: rollback of latest, stable promotion and retirement."""
