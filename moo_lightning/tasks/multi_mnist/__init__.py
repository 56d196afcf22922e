"""Multi-MNIST (Sener & Koltun 2018; Lin et al. 2019): two overlaid digits, one task per digit."""
