"""Domain generalisation: JiGen (Carlucci et al. 2019) — object classification and a jigsaw
puzzle on one backbone — trained by LS or steered by PNG with an adversarial feature
discrepancy as its criterion (Ye & Liu, PNG, Table 2). Leave-one-domain-out on PACS (a user's
folder) or on the offline Rotated-MNIST stand-in."""
