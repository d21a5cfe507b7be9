"""Event simulation: Pythia 8 processes, a parametric detector, FastJet jets, chunked runs."""
