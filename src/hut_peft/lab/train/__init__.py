"""Recipes: typed configs that run the paper's experiments on transformers' Trainer."""
