"""Train one model (or one ensemble) with a gradient combiner: ``moo-train`` in a checkout.

python train.py task=toy combiner=epo preference=[0.2,0.8]
python train.py task=qnli combiner=epo -m seed=0-9
"""

from moo_lightning.cli.train import cli

if __name__ == "__main__":
    cli()
