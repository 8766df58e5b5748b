"""models/diffmvs"""
