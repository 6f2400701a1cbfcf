"""Teacher generation, rejection sampling of verified traces, and student SFT.

Not implemented in this release: the package exists so the layout matches the R1 recipe, and it
deliberately exports nothing yet (see the README's Status section).
"""
