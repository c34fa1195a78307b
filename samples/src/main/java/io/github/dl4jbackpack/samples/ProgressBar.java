// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.samples;

import java.io.PrintStream;

/** A one-line console progress bar for long loops in the samples. */
public final class ProgressBar {

    private static final int WIDTH = 30;

    private final PrintStream out;
    private final String label;
    private final long total;
    private final long start = System.nanoTime();

    /**
     * @param out where to draw (the samples use standard error, keeping standard output for results)
     * @param label text before the bar
     * @param total number of steps
     */
    public ProgressBar(PrintStream out, String label, long total) {
        this.out = out;
        this.label = label;
        this.total = Math.max(1, total);
    }

    /**
     * Redraws the bar.
     *
     * @param done steps completed
     * @param status text after the bar
     */
    public void update(long done, String status) {
        int filled = (int) (WIDTH * Math.min(done, total) / total);
        double seconds = (System.nanoTime() - start) / 1e9;
        out.printf("\r%s [%s%s] %d/%d %.1fs %s", label, "#".repeat(filled), "-".repeat(WIDTH - filled), done, total,
                seconds, status);
        out.flush();
    }

    /** Ends the line. */
    public void finish() {
        out.println();
    }
}
