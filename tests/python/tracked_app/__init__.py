"""A Django app whose models the cache tracks (test_django_models.py)."""
