"""hepsonic_models: define, train, validate and export the physics models served by hepsonic.

Every model in ``model_repository/`` is produced by code in this package from data it generates.
The served tensor interface of each model is fixed in :mod:`hepsonic_models.specs`.
"""
