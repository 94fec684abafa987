"""Reconcile: desired objects vs observed ones (plan), apply, observe, write status."""
