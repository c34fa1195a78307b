// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.samples;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/** Writes the samples' result tables. */
final class CsvFiles {

    private CsvFiles() {
    }

    /**
     * Writes a header and rows, creating the file's directory if needed.
     *
     * @param file the CSV file
     * @param header the header line
     * @param rows the rows, already formatted
     */
    static void write(Path file, String header, List<String> rows) {
        List<String> lines = new ArrayList<>(rows.size() + 1);
        lines.add(header);
        lines.addAll(rows);
        try {
            Path parent = file.toAbsolutePath().getParent();
            if (parent != null) {
                Files.createDirectories(parent);
            }
            Files.write(file, lines, StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write " + file, e);
        }
    }
}
