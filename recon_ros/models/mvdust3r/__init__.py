"""models/mvdust3r"""
