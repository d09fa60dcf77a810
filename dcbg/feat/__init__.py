"""Feature computation"""
