"""Export the embedded digits as a LLaVA conversation data set (mix665k shape).

Writes ``<out>/train.json`` (1,347 records), ``<out>/test.json`` (450) and
``<out>/images/*.png`` (32 px RGB), using the fixed split of
:func:`mergemix_mm.datasets.digits_split_indices`, and prints a
``tools/mllm/train.py`` command that trains a tiny random LLaVA on it. The
multi-seed SFT vs MergeMix comparison is ``benchmarks/mllm_digits_demo.py``.

Usage::

    python tools/mllm/demo_digits.py --out data/digits_llava
"""
import argparse
import os.path as osp
import sys

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', default='data/digits_llava',
                        help='output folder')
    parser.add_argument('--img-size', type=int, default=32)
    args = parser.parse_args(argv)
    if args.img_size < 8:
        parser.error(f'--img-size {args.img_size}: must be >= 8')
    from mergemix_mm.mllm.digits_demo import export_digits_llava
    paths = export_digits_llava(args.out, args.img_size)
    print(f'wrote {paths["train"]}, {paths["test"]} and '
          f'{paths["image_folder"]}/')
    print('train a tiny random LLaVA with SFT + MergeMix SimPO:\n'
          f'  python tools/mllm/train.py --tiny llava --data_path '
          f'{paths["train"]} --image_folder {paths["image_folder"]} '
          '--merge_num 32 --system_prompt "" --output_dir '
          'work_dirs/tiny_llava_digits --num_train_epochs 1 '
          '--per_device_train_batch_size 32 --learning_rate 2e-3 --use_cpu '
          '--report_to none')
    return paths


if __name__ == '__main__':
    main()
