# bench/plot.gp: plots of bench/peers.sh results; run in the results folder (peers.sh does).
#   latency.svg: 4 KiB random-read latency percentiles at QD1 and QD32, per peer
#   loss.svg:    4 KiB random-read QD32 goodput versus packet loss rate, per peer
peers = "ipsan-udp ipsan-tcp nbdkit qemu-nbd tgt"
set datafile separator whitespace
set terminal svg size 1000,420 dynamic font "sans,11"

set output "latency.svg"
set multiplot layout 1,2 title "4 KiB random read: latency percentiles (lower is better)"
set logscale y
set xlabel "percentile"
set ylabel "latency (us)"
set xtics ("p50" 1, "p90" 2, "p99" 3, "p99.9" 4)
set xrange [0.7:4.3]
set key top left
do for [wl in "rr4k_qd1 rr4k_qd32"] {
  set title wl
  plot for [p in peers] sprintf("< awk -F, '$1==\"%s\" && $2==\"%s\" {if ($6!=\"\") print 1,$6; if ($7!=\"\") print 2,$7; if ($8!=\"\") print 3,$8; if ($9!=\"\") print 4,$9}' latest.csv", p, wl) \
       using 1:2 with linespoints lw 2 title p
}
unset multiplot

set output "loss.svg"
unset logscale y
set multiplot layout 1,2 title "4 KiB random read under packet loss (higher is better)"
set xlabel "packet loss (%)"
set xtics (0, 1, 5)
set xrange [-0.3:5.3]
set key top right
do for [wl in "rr4k_qd32 rr4k_qd1"] {
  set title wl
  set ylabel "goodput (MB/s)"
  plot for [p in peers] sprintf("< cat latest.csv loss.csv 2>/dev/null | awk -F, '$1==\"%s\" && $2==\"%s\" {print $3,$5}' | sort -n", p, wl) \
       using 1:2 with linespoints lw 2 title p
}
unset multiplot
