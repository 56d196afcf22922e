"""Test a saved model again: ``moo-evaluate`` in a checkout.

python evaluate.py outputs/sst2/<date_time>                  # its model.ckpt, on its test split
python evaluate.py outputs/sst2/<date_time> data.path=/other/copy/of/sst2
"""

from moo_lightning.cli.evaluate import cli

if __name__ == "__main__":
    cli()
