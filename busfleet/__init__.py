"""busfleet: the command line and the pieces that compose the other packages (demo, sim bus).

`busfleet` is the composition root: it may import onboard, central and hw_sim; they never
import it.
"""
