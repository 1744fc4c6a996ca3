import Foundation

/// A line chart rendered as standalone SVG: one line per series with point
/// markers, linear or logarithmic axes, ticks at decades (log) or at 1-2-5
/// steps (linear). Panels sit side by side in one document.
public struct LinePlot: Sendable {
    public struct Series: Sendable {
        public var name: String
        /// (x, y) in data units; points with a non-positive coordinate on a
        /// log axis are left out.
        public var points: [(x: Double, y: Double)]
        /// A dashed line with no markers (a bound, such as a roof), else markers joined by a solid line.
        public var dashed: Bool
        /// Labels beside each point; a labelled series is drawn as points only (a scatter).
        public var labels: [String]?
        public init(name: String, points: [(x: Double, y: Double)], dashed: Bool = false, labels: [String]? = nil) {
            self.name = name
            self.points = points
            self.dashed = dashed
            self.labels = labels
        }
    }

    public var title: String
    public var xLabel: String, yLabel: String
    public var logX: Bool, logY: Bool
    public var series: [Series]
    /// A band of x values drawn shaded behind the lines (such as the training range), with its label.
    public var shade: (from: Double, to: Double, label: String)?

    public init(title: String, xLabel: String, yLabel: String, logX: Bool = false, logY: Bool = false, series: [Series],
                shade: (from: Double, to: Double, label: String)? = nil) {
        self.shade = shade
        self.title = title
        self.xLabel = xLabel
        self.yLabel = yLabel
        self.logX = logX
        self.logY = logY
        self.series = series
    }

    static let palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
    static let width = 520.0, height = 380.0
    static let margin = (left: 70.0, right: 20.0, top: 40.0, bottom: 50.0)

    /// An SVG document with `panels` side by side and one legend below them
    /// (series are matched across panels by name, so share colours).
    public static func svg(_ panels: [LinePlot], caption: String? = nil) -> String {
        var names: [String] = []
        for panel in panels {
            for s in panel.series where !names.contains(s.name) { names.append(s.name) }
        }
        let legendHeight = 24.0 * Double((names.count + 3) / 4) + (caption == nil ? 10 : 34)
        let totalWidth = width * Double(max(panels.count, 1)), totalHeight = height + legendHeight
        var out = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(f(totalWidth))\" height=\"\(f(totalHeight))\" "
            + "viewBox=\"0 0 \(f(totalWidth)) \(f(totalHeight))\" font-family=\"sans-serif\" font-size=\"12\">\n"
        out += "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n"
        for (i, panel) in panels.enumerated() {
            out += "<g transform=\"translate(\(f(width * Double(i))),0)\">\n" + panel.body(colors: names) + "</g>\n"
        }
        for (i, name) in names.enumerated() {
            let x = 20 + Double(i % 4) * (totalWidth - 40) / 4, y = height + 12 + 24 * Double(i / 4)
            let color = palette[i % palette.count]
            out += "<line x1=\"\(f(x))\" y1=\"\(f(y))\" x2=\"\(f(x + 24))\" y2=\"\(f(y))\" stroke=\"\(color)\" stroke-width=\"2\"/>"
                + "<circle cx=\"\(f(x + 12))\" cy=\"\(f(y))\" r=\"3\" fill=\"\(color)\"/>"
                + "<text x=\"\(f(x + 30))\" y=\"\(f(y + 4))\">\(escapeXML(name))</text>\n"
        }
        if let caption {
            out += "<text x=\"20\" y=\"\(f(totalHeight - 12))\" fill=\"#555555\">\(escapeXML(caption))</text>\n"
        }
        return out + "</svg>\n"
    }

    /// One panel's axes, grid, lines and title, in a width x height box.
    func body(colors names: [String]) -> String {
        let m = Self.margin
        let plotW = Self.width - m.left - m.right, plotH = Self.height - m.top - m.bottom
        let visible = series.map { s in s.points.filter { (!logX || $0.x > 0) && (!logY || $0.y > 0) && $0.x.isFinite && $0.y.isFinite } }
        let xs = visible.flatMap { $0.map(\.x) }, ys = visible.flatMap { $0.map(\.y) }
        let xAxis = Axis(values: xs, log: logX, includeZero: false)
        let yAxis = Axis(values: ys, log: logY, includeZero: !logY)
        func px(_ x: Double) -> Double { m.left + xAxis.fraction(x) * plotW }
        func py(_ y: Double) -> Double { m.top + (1 - yAxis.fraction(y)) * plotH }
        var out = "<text x=\"\(f(Self.width / 2))\" y=\"22\" text-anchor=\"middle\" font-size=\"14\" font-weight=\"bold\">"
            + "\(escapeXML(title))</text>\n"
        if let shade {
            // Clipped to the plot: the band may start before the first point (or at 0 on a log axis).
            let from = logX && shade.from <= 0 ? pow(10, xAxis.low) : shade.from
            let lo = min(max(px(from), m.left), m.left + plotW)
            let hi = min(max(px(shade.to), m.left), m.left + plotW)
            if hi > lo {
                out += "<rect x=\"\(f(lo))\" y=\"\(f(m.top))\" width=\"\(f(hi - lo))\" height=\"\(f(plotH))\" fill=\"#f0f0f0\"/>"
                    + "<text x=\"\(f(lo + 4))\" y=\"\(f(m.top + 14))\" font-size=\"10\" fill=\"#777777\">\(escapeXML(shade.label))</text>\n"
            }
        }
        out += "<rect x=\"\(f(m.left))\" y=\"\(f(m.top))\" width=\"\(f(plotW))\" height=\"\(f(plotH))\" fill=\"none\" stroke=\"#888888\"/>\n"
        for tick in xAxis.ticks {
            let x = px(tick)
            out += "<line x1=\"\(f(x))\" y1=\"\(f(m.top))\" x2=\"\(f(x))\" y2=\"\(f(m.top + plotH))\" stroke=\"#e5e5e5\"/>"
                + "<text x=\"\(f(x))\" y=\"\(f(m.top + plotH + 16))\" text-anchor=\"middle\">\(Self.label(tick))</text>\n"
        }
        for tick in yAxis.ticks {
            let y = py(tick)
            out += "<line x1=\"\(f(m.left))\" y1=\"\(f(y))\" x2=\"\(f(m.left + plotW))\" y2=\"\(f(y))\" stroke=\"#e5e5e5\"/>"
                + "<text x=\"\(f(m.left - 6))\" y=\"\(f(y + 4))\" text-anchor=\"end\">\(Self.label(tick))</text>\n"
        }
        out += "<text x=\"\(f(m.left + plotW / 2))\" y=\"\(f(Self.height - 12))\" text-anchor=\"middle\">\(escapeXML(xLabel))</text>\n"
        out += "<text transform=\"translate(16,\(f(m.top + plotH / 2))) rotate(-90)\" text-anchor=\"middle\">\(escapeXML(yLabel))</text>\n"
        for (s, points) in zip(series, visible) where !points.isEmpty {
            let color = Self.palette[(names.firstIndex(of: s.name) ?? 0) % Self.palette.count]
            if s.labels == nil {
                let path = points.map { "\(f(px($0.x))),\(f(py($0.y)))" }.joined(separator: " ")
                out += "<polyline points=\"\(path)\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\""
                    + (s.dashed ? " stroke-dasharray=\"6,4\"" : "") + "><title>\(escapeXML(s.name))</title></polyline>\n"
            }
            guard !s.dashed else { continue }
            // Labels follow the points kept (points off a log axis are dropped).
            let kept = s.points.enumerated().filter { (!logX || $0.element.x > 0) && (!logY || $0.element.y > 0)
                && $0.element.x.isFinite && $0.element.y.isFinite }
            for (i, p) in kept {
                let label = s.labels.map { i < $0.count ? $0[i] : "" } ?? ""
                out += "<circle cx=\"\(f(px(p.x)))\" cy=\"\(f(py(p.y)))\" r=\"3\" fill=\"\(color)\">"
                    + "<title>\(escapeXML(label.isEmpty ? s.name : s.name + ": " + label)): \(Self.label(p.x)), \(Self.label(p.y))</title></circle>\n"
                if !label.isEmpty {
                    out += "<text x=\"\(f(px(p.x) + 5))\" y=\"\(f(py(p.y) - 4))\" font-size=\"9\" fill=\"\(color)\">\(escapeXML(label))</text>\n"
                }
            }
        }
        return out
    }

    /// A tick label: integers plainly, powers of two and ten compactly, else 3 significant digits.
    static func label(_ value: Double) -> String {
        if value == 0 { return "0" }
        if value.rounded() == value, abs(value) < 1e6 { return String(Int(value)) }
        if value.rounded() == value, abs(value) >= 1e6 { return String(format: "%.0e", value) }
        return String(format: "%.3g", value)
    }

    /// Range and ticks of one axis.
    struct Axis {
        let low: Double, high: Double, log: Bool
        let ticks: [Double]

        init(values: [Double], log: Bool, includeZero: Bool) {
            self.log = log
            var lo = values.min() ?? 1, hi = values.max() ?? 10
            if log {
                lo = Foundation.log10(lo)
                hi = Foundation.log10(hi)
                if hi - lo < 1e-9 { lo -= 0.5; hi += 0.5 }
                let pad = 0.04 * (hi - lo)
                (low, high) = (lo - pad, hi + pad)
                var t: [Double] = []
                for e in Int(low.rounded(.down))...Int(high.rounded(.up)) {
                    let v = Double(e)
                    if v >= low, v <= high { t.append(pow(10, v)) }
                }
                // Less than two decades: ticks at 1-2-5 of each decade too.
                if t.count < 3 {
                    t = []
                    for e in Int(low.rounded(.down))...Int(high.rounded(.up)) {
                        for m in [1.0, 2, 5] where Foundation.log10(m) + Double(e) >= low && Foundation.log10(m) + Double(e) <= high {
                            t.append(m * pow(10, Double(e)))
                        }
                    }
                }
                ticks = t
            } else {
                if includeZero { lo = Swift.min(lo, 0) }
                if hi - lo < 1e-12 { hi = lo + 1 }
                let raw = (hi - lo) / 5, magnitude = pow(10, (Foundation.log10(raw)).rounded(.down))
                let step = [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? raw
                low = (lo / step).rounded(.down) * step
                high = (hi / step).rounded(.up) * step
                ticks = stride(from: low, through: high + step / 2, by: step).map { $0 }
            }
        }

        func fraction(_ v: Double) -> Double {
            let x = log ? Foundation.log10(v) : v
            return (x - low) / (high - low)
        }
    }
}

/// A pixel coordinate with two decimals.
private func f(_ value: Double) -> String { String(format: "%.2f", value) }
