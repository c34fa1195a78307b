// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.samples.data;

import java.util.List;

/**
 * Images with integer class labels as read from disk, before conversion to arrays: unsigned pixel
 * bytes in NCHW order (item, channel, row, column).
 *
 * @param channels channels per image
 * @param height rows per image
 * @param width columns per image
 * @param classes number of classes (labels are in {@code [0, classes)})
 * @param pixels {@code count · channels · height · width} unsigned bytes
 * @param labels one label per image
 */
public record LabelledImages(int channels, int height, int width, int classes, byte[] pixels, int[] labels) {

    /** Checks the sizes and labels. */
    public LabelledImages {
        if ((long) labels.length * channels * height * width != pixels.length) {
            throw new IllegalArgumentException(labels.length + " labels but " + pixels.length + " pixel bytes for images of "
                    + channels + "×" + height + "×" + width);
        }
        for (int i = 0; i < labels.length; i++) {
            if (labels[i] < 0 || labels[i] >= classes) {
                throw new IllegalArgumentException("label " + labels[i] + " of image " + i + " is not in [0, " + classes + ")");
            }
        }
    }

    /** @return the number of images */
    public int count() {
        return labels.length;
    }

    /** @return values per image */
    public int imageSize() {
        return channels * height * width;
    }

    /**
     * Concatenates parts with the same image shape and classes (e.g. CIFAR-10's five training batches).
     *
     * @param parts at least one part
     * @return all images in order
     */
    public static LabelledImages concat(List<LabelledImages> parts) {
        LabelledImages first = parts.get(0);
        int n = 0;
        for (LabelledImages p : parts) {
            if (p.channels != first.channels || p.height != first.height || p.width != first.width
                    || p.classes != first.classes) {
                throw new IllegalArgumentException("cannot concatenate images of different shapes or class counts");
            }
            n += p.count();
        }
        byte[] pixels = new byte[n * first.imageSize()];
        int[] labels = new int[n];
        int at = 0;
        for (LabelledImages p : parts) {
            System.arraycopy(p.pixels, 0, pixels, at * first.imageSize(), p.pixels.length);
            System.arraycopy(p.labels, 0, labels, at, p.count());
            at += p.count();
        }
        return new LabelledImages(first.channels, first.height, first.width, first.classes, pixels, labels);
    }
}
