// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.samples.experiments;

import org.knowm.xchart.BitmapEncoder;
import org.knowm.xchart.XYChart;
import org.knowm.xchart.XYChartBuilder;
import org.knowm.xchart.XYSeries;
import org.knowm.xchart.style.Styler;
import org.knowm.xchart.style.lines.SeriesLines;
import org.knowm.xchart.style.markers.SeriesMarkers;

import javax.imageio.ImageIO;
import java.awt.BasicStroke;
import java.awt.Color;
import java.awt.Graphics2D;
import java.awt.image.BufferedImage;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

/**
 * One figure per problem in the paper's layout (Fig. 7, 10, 11): four panels (train loss, train
 * accuracy, test loss, test accuracy against epochs), per optimiser the median over seeds as a
 * solid line and the quartiles as thin dashed lines of the same colour.
 */
final class Plots {

    private static final int PANEL_WIDTH = 640;
    private static final int PANEL_HEIGHT = 440;
    private static final Color[] COLORS = {new Color(0x1f77b4), new Color(0xff7f0e), new Color(0x2ca02c),
            new Color(0xd62728), new Color(0x9467bd), new Color(0x8c564b), new Color(0x17becf)};
    private static final EpochMetrics.Metric[] PANELS = {EpochMetrics.Metric.TRAIN_LOSS,
            EpochMetrics.Metric.TRAIN_ACCURACY, EpochMetrics.Metric.TEST_LOSS, EpochMetrics.Metric.TEST_ACCURACY};

    private Plots() {
    }

    /**
     * @param title the figure's title (the problem)
     * @param curves per optimiser label, its summary
     * @param file the PNG file
     */
    static void figure(String title, Map<String, List<Protocol.Quartiles>> curves, Path file) {
        BufferedImage image = new BufferedImage(2 * PANEL_WIDTH, 2 * PANEL_HEIGHT + 40, BufferedImage.TYPE_INT_RGB);
        Graphics2D g = image.createGraphics();
        g.setColor(Color.WHITE);
        g.fillRect(0, 0, image.getWidth(), image.getHeight());
        g.setColor(Color.BLACK);
        g.setFont(g.getFont().deriveFont(20f));
        g.drawString(title, 20, 28);
        for (int p = 0; p < PANELS.length; p++) {
            XYChart chart = panel(PANELS[p], curves);
            g.drawImage(BitmapEncoder.getBufferedImage(chart), (p % 2) * PANEL_WIDTH, 40 + (p / 2) * PANEL_HEIGHT, null);
        }
        g.dispose();
        try {
            Files.createDirectories(file.toAbsolutePath().getParent());
            ImageIO.write(image, "png", file.toFile());
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write " + file, e);
        }
    }

    private static XYChart panel(EpochMetrics.Metric metric, Map<String, List<Protocol.Quartiles>> curves) {
        XYChart chart = new XYChartBuilder().width(PANEL_WIDTH).height(PANEL_HEIGHT).title(metric.title())
                .xAxisTitle("epoch").build();
        chart.getStyler().setLegendPosition(Styler.LegendPosition.InsideNE);
        chart.getStyler().setLegendVisible(metric == EpochMetrics.Metric.TRAIN_LOSS);
        chart.getStyler().setMarkerSize(4);
        int c = 0;
        for (Map.Entry<String, List<Protocol.Quartiles>> e : curves.entrySet()) {
            List<Protocol.Quartiles> rows = e.getValue().stream().filter(q -> q.metric() == metric && q.runs() > 0)
                    .toList();
            if (rows.isEmpty()) {
                c++;
                continue;
            }
            double[] x = rows.stream().mapToDouble(Protocol.Quartiles::epoch).toArray();
            Color color = COLORS[c++ % COLORS.length];
            XYSeries median = chart.addSeries(e.getKey(), x, rows.stream().mapToDouble(Protocol.Quartiles::median).toArray());
            median.setLineColor(color);
            median.setMarkerColor(color);
            median.setMarker(SeriesMarkers.CIRCLE);
            median.setLineStyle(new BasicStroke(2f));
            addQuartile(chart, e.getKey() + " q1", x, rows.stream().mapToDouble(Protocol.Quartiles::q1).toArray(), color);
            addQuartile(chart, e.getKey() + " q3", x, rows.stream().mapToDouble(Protocol.Quartiles::q3).toArray(), color);
        }
        return chart;
    }

    private static void addQuartile(XYChart chart, String name, double[] x, double[] y, Color color) {
        XYSeries s = chart.addSeries(name, x, y);
        s.setLineColor(color);
        s.setMarker(SeriesMarkers.NONE);
        s.setLineStyle(SeriesLines.DASH_DASH);
        s.setShowInLegend(false);
    }
}
