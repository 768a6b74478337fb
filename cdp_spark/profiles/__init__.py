"""Unified profiles and calculated attributes: the `profiles` stage and the typed profile view.

`view.profile_view` is the read API other stages use; `stage.run` is the daily rebuild.
"""
